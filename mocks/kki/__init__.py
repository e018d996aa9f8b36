"""The KKI mock: registrations (STR) with certification status, SKP, trainings and SIPs."""
