//! One order book per market: price levels on each side, each a FIFO queue of orders.
