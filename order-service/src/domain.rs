//! The order domain: parse the request into valid types first, then everything downstream
//! (database, events) only ever sees orders that make sense.

mod new_order;
mod order;

pub use new_order::{
    CreateOrderItem, CreateOrderRequest, CustomerId, NewOrder, NewOrderItem, Quantity, Sku,
};
pub use order::{price, IdempotencyKey, Order, OrderItem, OrderStatus};
