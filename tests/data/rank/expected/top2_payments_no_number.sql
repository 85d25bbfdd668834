SELECT payment_id, order_id, paid FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY paid ASC, payment_id DESC) AS rn FROM payments) WHERE rn < 3
