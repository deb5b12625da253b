"""`{% load money %}`: aspweb.money's two formats as template filters."""

from django import template

from aspweb.money import money, usd

register = template.Library()
register.filter("money", money)
register.filter("usd", usd)
