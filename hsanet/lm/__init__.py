"""The language model side (Sec. 3.4, Eq. 6): tokenizer and the caption decoder."""
from .tokenizer import TextTokenizer
from .decoder import CaptionDecoder

__all__ = ["TextTokenizer", "CaptionDecoder"]
