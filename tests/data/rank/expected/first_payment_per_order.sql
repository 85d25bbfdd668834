SELECT payment_id, order_id, paid, ts FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts) AS rn FROM payments) WHERE rn <= 1
