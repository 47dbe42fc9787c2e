"""Face-verification service: YuNet detection, 5-point alignment and a distilled embedding model in ONNX Runtime."""
