SELECT o.order_id, o.user_id, o.amount, l.level, l.discount, o.ts AS order_ts, l.ts AS level_ts FROM orders AS o LEFT JOIN user_levels FOR SYSTEM_TIME AS OF o.ts AS l ON o.user_id = l.user_id
