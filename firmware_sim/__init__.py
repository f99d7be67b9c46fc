"""A simulated radio world: shoppers' phones, wearables, staff badges and store beacons
advertising to gateways, with the ground truth of who was where.

It stands in for the Bluetooth adapter only (as a bleak backend, or handing bleak's objects to
the gateway pipeline directly), so the gateway above it runs unchanged. ``world`` is the small
demo store; ``scenario`` and ``store`` build a store from YAML, ``airwaves`` computes what each
gateway receives, ``runner`` drives the gateways, ``truth`` and ``score`` measure them. See
docs/simulator.md.
"""
