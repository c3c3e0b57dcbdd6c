"""kalshi"""
