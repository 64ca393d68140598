"""``kogata optimize``: search recipes for the cheapest artifact that meets the suite's KPIs."""
