"""glm-image-sglang: serve GLM-Image and Wan 2.2 through the SGLang diffusion server."""

__version__ = "0.1.0"
