"""Singer tap for Custobar's data API."""

__version__ = "0.1.0"
