"""What a server may ask CTranslate2 for: the devices and compute types (the settings offer these; the
engine resolves "auto" and "default" on the machine it runs on)."""

DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("default", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")
