"""overnight: improves DSPy prompt programs every night, and proves each change safe before it ships."""

__version__ = "0.1.0"
