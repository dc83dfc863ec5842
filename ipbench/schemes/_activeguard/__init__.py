"""ActiveGuard's parts: C&W fingerprints and the control layer (``fingerprint``), the weight
watermark (``watermark``) and its own evaluation numbers (``metrics``)."""
