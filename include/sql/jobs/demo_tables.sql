-- Target tables of the example jobs (jobs never create or migrate their targets).
CREATE SCHEMA IF NOT EXISTS sales;
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS sales.orders (
    order_id bigint PRIMARY KEY,
    customer_id text,
    status text,
    quantity integer,
    unit_price numeric(12, 2),
    order_date date
);

CREATE TABLE IF NOT EXISTS sales.region_revenue (
    region text PRIMARY KEY,
    orders bigint NOT NULL,
    revenue numeric(14, 2)
);

CREATE TABLE IF NOT EXISTS analytics.payment_events (
    event_id bigint NOT NULL,
    user_id text,
    event text NOT NULL,
    occurred_at timestamptz NOT NULL,
    amount numeric(10, 2)
);
