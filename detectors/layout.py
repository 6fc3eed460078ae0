"""What a saved detector's folder holds (read without importing torch)."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
#: ``format_version`` in config.json.
FORMAT_VERSION = 1
