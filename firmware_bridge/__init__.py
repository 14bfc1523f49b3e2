"""Bytes to messages and back: framing, codecs, transports and device drivers. No policy lives here.

This is the lowest layer (ARCHITECTURE.md section 2): it imports none of the project's other packages,
so the clock and the error root live here where every layer may reach them.
"""
