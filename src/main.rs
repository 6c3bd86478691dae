fn main() {
    println!("gridwatch");
}
