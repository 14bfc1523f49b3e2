"""The procedure: state machine, temperature/impedance loop, procedure record, reports and the CLI."""
