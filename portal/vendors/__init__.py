"""Vendor companies (委託先・外部サービス提供者), identified by their 法人番号."""
