//! Links with this board's `memory.x` (see `ricochet-board-build`).

fn main() {
    ricochet_board_build::link(include_bytes!("memory.x"));
}
