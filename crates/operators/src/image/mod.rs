//! The image forward models of the DPS and DAPS tables (docs/protocols.md §1), each on rows of
//! flattened `[c, h, w]` images in [−1, 1].

pub mod bkse;
pub mod block;
pub mod blur;
pub mod inpaint;
pub mod motion;
pub mod phase;
pub mod resizer;
pub mod separable;
pub mod tasks;

pub use block::BlockAverage;
pub use blur::ConvOperator;
pub use inpaint::{InpaintOperator, Mask};
pub use phase::{Hdr, PhaseRetrieval, PhaseVariant};
pub use separable::{ImageShape, SeparableOperator};
pub use tasks::{Task, TaskName, Variant, build};
