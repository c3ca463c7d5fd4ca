"""Parameters of the plant: the quantization-to-power table, campus and tariff data.

Import-free on purpose: submodules are imported where they are used.
"""
