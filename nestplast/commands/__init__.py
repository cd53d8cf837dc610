"""The command lines: each parses its arguments and calls the library (no library function takes parsed arguments)."""
