"""Hard limits, interlocks, the output gate and the independent watchdog: whether RF may flow.

Written and tested as if ``control`` were hostile (ARCHITECTURE.md section 7).
"""
