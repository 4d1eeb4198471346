"""Pure domain logic: job states, reasons, retry policy and errors. No I/O, no imports of ours."""
