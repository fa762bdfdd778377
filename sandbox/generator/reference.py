"""Reference data the generator draws from."""
import numpy as np

CURRENCIES = np.array(["USD", "EUR", "GBP", "CAD"])
CURRENCY_WEIGHTS = np.array([0.6, 0.25, 0.1, 0.05])
COUNTRIES = np.array(["US", "DE", "GB", "CA", "FR", "NL", "ES", "IT", "SE", "AU"])
COUNTRY_WEIGHTS = np.array([0.4, 0.12, 0.1, 0.08, 0.07, 0.06, 0.05, 0.05, 0.04, 0.03])
INDUSTRIES = np.array(["SOFTWARE", "MANUFACTURING", "RETAIL", "LOGISTICS", "HEALTHCARE", "FINANCE"])
NAME_A = np.array(["Blue", "North", "Silver", "Bright", "Iron", "Green", "Swift", "Golden",
                   "Red", "Summit", "Harbor", "Pioneer", "Atlas", "Cedar", "Delta", "Echo"])
NAME_B = np.array(["Harbor", "Wind", "Stone", "Field", "Bridge", "River", "Peak", "Works",
                   "Labs", "Systems", "Foods", "Motors", "Logistics", "Analytics", "Health", "Energy"])
SUFFIX = np.array(["Inc", "LLC", "GmbH", "Ltd", "BV", "SA", "AB", "Corp"])
FIRST = np.array(["Ana", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines",
                  "Jonas", "Kara", "Liam", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam"])
LAST = np.array(["Smith", "Meyer", "Garcia", "Brown", "Rossi", "Novak", "Jensen", "Martin",
                 "Dubois", "Kowalski", "Silva", "Berg", "Walsh", "Fischer", "Lopez", "Young"])
OPEN_STAGES = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled"]
