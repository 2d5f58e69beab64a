"""The Kaggle round trip: `client` (the real `kaggle` package, retries, routing), `records` (the durable
submission record), `flow` (push → wait → fetch → validate → convert → submit → record) and `emulator`
(a loopback Kaggle for tests and dry runs). Nothing here is imported by the kernel's pipeline."""
