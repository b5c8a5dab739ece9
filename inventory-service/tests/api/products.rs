use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_seeded_catalogue_is_listed_with_prices_and_stock() {
    let app = spawn_app().await;
    let list: Value = app.get("/products").await.json().await.unwrap();
    let skus: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(
        skus,
        ["CABLE-USBC", "KEYBOARD-01", "MONITOR-27", "MOUSE-01"]
    );

    let keyboard = app.product("keyboard-01").await;
    assert_eq!(keyboard["unit_price_cents"], 8999);
    assert_eq!(keyboard["currency"], "EUR");
    assert_eq!(keyboard["on_hand"], 100);
    assert_eq!(keyboard["reserved"], 0);

    let missing = app.get("/products/NOPE").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(app.get("/health").await.status(), 200);

    // A NUL character cannot name a product (PostgreSQL would refuse it with an error).
    for path in ["/products/%00", "/products/KEY%00BOARD-01"] {
        let nul = app.get(path).await;
        assert_eq!(nul.status(), 404, "{path}");
        assert_eq!(nul.headers()["content-type"], "application/problem+json");
    }

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/products"]["get"].is_object());
    assert!(doc["paths"]["/products/{sku}"]["get"]["responses"]["404"].is_object());
}
