"""The live node: one async context owning a live process's parts (see ``node.py``)."""
