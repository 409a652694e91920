"""The signature language: parse, compile to pydantic models and JSON Schema, render, parse outputs.

>>> from kaizen.signatures import create_signature
>>> sig = create_signature("question: str -> answer: str, confidence: float")
>>> sig.output_names
('answer', 'confidence')
"""

from .fields import InputField, OutputField, SignatureField
from .fieldtypes import register_type, registered_types
from .output import extract_object, parse_output
from .render import render_messages
from .signature import Signature, create_signature

__all__ = [
    "InputField",
    "OutputField",
    "Signature",
    "SignatureField",
    "create_signature",
    "extract_object",
    "parse_output",
    "register_type",
    "registered_types",
    "render_messages",
]
