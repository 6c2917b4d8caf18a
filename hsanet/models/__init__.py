"""HSA-Net as one ``nn.Module`` (:class:`~hsanet.models.hsanet.HSANet`): encode, forward, generate,
save_pretrained / from_pretrained."""
