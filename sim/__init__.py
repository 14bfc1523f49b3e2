"""Simulators of the RF generator, the ultrasound probe and the tissue, speaking the real wire protocols.

They import only ``firmware_bridge`` codecs, never ``control`` or ``safety`` (ARCHITECTURE.md section 2).
"""
