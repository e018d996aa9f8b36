"""The SISDMK mock: health workers with employment, education and certifications; facilities."""
