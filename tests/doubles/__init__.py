"""Test doubles of the parts that cannot run here (a ComfyUI server, an Argo Server, S3 faults,
Qwen2-VL weights): each speaks the real wire protocol or format, checked against its spec."""
