"""storelink: BLE presence in physical stores, from advertisement to personal offer."""

__version__ = "0.1.0"
