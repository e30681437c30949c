from django.urls import path

from keys import views

app_name = "keys"
urlpatterns = [
    path("", views.key_list, name="list"),
    path("add/", views.key_add, name="add"),
    path("add/ip-row/", views.ip_row, name="ip_row"),
    path("<str:identifier>/", views.key_detail, name="detail"),
    path("<str:identifier>/edit/", views.key_edit, name="edit"),
    path("<str:identifier>/revoke/", views.key_revoke, name="revoke"),
]
