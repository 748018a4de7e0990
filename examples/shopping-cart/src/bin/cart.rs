//! A command-line client of the shopping cart, for trying the service out by hand.
//!
//! ```sh
//! cart add alice apple 2
//! cart get alice
//! cart remove alice apple
//! ```

use clap::{Parser, Subcommand};
use shopping_cart::proto::shopping_cart_client::ShoppingCartClient;
use shopping_cart::proto::{AddLineItem, GetShoppingCart, RemoveLineItem};

/// Calls the shopping cart through the Cloudstate proxy.
#[derive(Parser)]
struct Args {
    /// The proxy's address.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    target: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Adds a quantity of a product to a user's cart.
    Add {
        user: String,
        product: String,
        #[arg(allow_negative_numbers = true)]
        quantity: i32,
    },
    /// Removes a product from a user's cart.
    Remove { user: String, product: String },
    /// Prints a user's cart.
    Get { user: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mut client = match ShoppingCartClient::connect(args.target.clone()).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: cannot reach the proxy at {}: {error}", args.target);
            std::process::exit(2);
        }
    };
    let result = match args.command {
        Command::Add {
            user,
            product,
            quantity,
        } => client
            .add_item(AddLineItem {
                user_id: user,
                name: product.clone(),
                product_id: product,
                quantity,
            })
            .await
            .map(|_| println!("ok")),
        Command::Remove { user, product } => client
            .remove_item(RemoveLineItem {
                user_id: user,
                product_id: product,
            })
            .await
            .map(|_| println!("ok")),
        Command::Get { user } => client
            .get_cart(GetShoppingCart { user_id: user })
            .await
            .map(|cart| {
                let items = cart.into_inner().items;
                if items.is_empty() {
                    println!("(empty)");
                }
                for item in items {
                    println!("{:>4} x {}", item.quantity, item.product_id);
                }
            }),
    };
    if let Err(status) = result {
        eprintln!("error: {:?}: {}", status.code(), status.message());
        std::process::exit(1);
    }
}
