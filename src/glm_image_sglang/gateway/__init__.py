"""The API gateway in front of SGLang (Starlette + httpx + uvicorn, all already in the image)."""
