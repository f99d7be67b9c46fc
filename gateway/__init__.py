"""The store gateway: turns Bluetooth advertisements into presence events on MQTT.

Decoding, identification, smoothing and presence are pure functions of their inputs and the
time they are given; only ``publish`` and ``run`` touch the network and the radio.
"""
