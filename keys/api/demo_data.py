"""Small demo data served by the protected API: a few records per catalogue API."""

DEMO_DATA: dict[str, list[dict]] = {
    "risks": [
        {"id": "R-001", "title": "Supplier insolvency", "score": 12, "owner": "Procurement"},
        {"id": "R-002", "title": "Data centre outage", "score": 16, "owner": "IT operations"},
        {"id": "R-003", "title": "Late regulatory filing", "score": 9, "owner": "Compliance"},
    ],
    "controls": [
        {"id": "C-001", "title": "Four-eyes payment approval", "last_test": "effective"},
        {"id": "C-002", "title": "Quarterly access review", "last_test": "partly effective"},
    ],
    "events": [
        {"id": "E-001", "title": "Duplicate invoice paid", "loss_eur": 4200},
        {"id": "E-002", "title": "Near miss: wrong bank account", "loss_eur": 0},
    ],
    "incidents": [
        {"id": "I-001", "title": "Phishing mail clicked", "status": "closed"},
        {"id": "I-002", "title": "Laptop lost on train", "status": "follow-up"},
    ],
    "mois": [
        {"id": "M-001", "title": "Automate access review", "progress": 60},
        {"id": "M-002", "title": "Second supplier for hosting", "progress": 20},
    ],
    "findings": [
        {"id": "F-001", "title": "Segregation of duties gap in payments", "status": "open"},
        {"id": "F-002", "title": "Backup restore untested", "status": "resolved"},
    ],
    "kris": [
        {"id": "K-001", "title": "Failed logins per day", "value": 31, "threshold": 50},
        {"id": "K-002", "title": "Overdue actions", "value": 7, "threshold": 5},
    ],
    "third-parties": [
        {"id": "T-001", "name": "Acme Hosting B.V.", "criticality": "high"},
        {"id": "T-002", "name": "Paperless Archiving Ltd", "criticality": "medium"},
    ],
}
