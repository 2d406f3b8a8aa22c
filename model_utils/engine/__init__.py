"""Loading and decoding on one device: CT2 generators, batching, prompts, streaming, scoring."""
