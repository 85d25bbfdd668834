SELECT order_id, user_id, amount, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY amount DESC, order_id ASC) AS rn FROM orders) WHERE rn <= 3
