"""The signature language: parse, compile to pydantic models and JSON Schema, render, parse outputs."""
