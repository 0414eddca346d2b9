"""Where a computation runs and what it leaves: devices, processes, random numbers, owned outputs, results files."""
