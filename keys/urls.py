from django.urls import path

from keys import views

app_name = "keys"
urlpatterns = [
    path("", views.key_list, name="list"),
    path("add/", views.key_add, name="add"),
    path("add/ip-row/", views.ip_row, name="ip_row"),
    path("add/ip-row/remove/", views.ip_row_remove, name="ip_row_remove"),
    path("add/ip-row/mine/", views.ip_row_mine, name="ip_row_mine"),
    path("<str:identifier>/", views.key_detail, name="detail"),
    path("<str:identifier>/edit/", views.key_edit, name="edit"),
    path("<str:identifier>/revoke/", views.key_revoke, name="revoke"),
]
