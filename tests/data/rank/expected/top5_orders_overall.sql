SELECT order_id, amount, rn FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY amount DESC, order_id DESC) AS rn FROM orders) WHERE rn <= 5
