"""Dashboards of 定期確認: figures, the lists behind them and their exports (対策基準 9.1(3),
9.2(6))."""
