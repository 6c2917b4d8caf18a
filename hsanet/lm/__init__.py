"""The language model side (Sec. 3.4, Eq. 6): tokenizer and the caption decoder."""
from hsanet.lm.tokenizer import TextTokenizer
from hsanet.lm.decoder import CaptionDecoder

__all__ = ["TextTokenizer", "CaptionDecoder"]
