"""Training HSA-Net with PyTorch Lightning: caption pre-training on ChEBI-20 and property heads."""
