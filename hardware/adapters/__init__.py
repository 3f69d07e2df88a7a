"""Backends: the simulated device with fault injection here; vendor adapters (qibolab,
OpenPulse/Braket) import their SDKs lazily inside their own modules."""
