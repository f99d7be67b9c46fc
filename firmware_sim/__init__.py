"""A simulated radio world: shoppers' phones and store beacons advertising to gateways.

It stands in for the Bluetooth adapter only, as a bleak backend, so the gateway above it runs
unchanged.
"""
