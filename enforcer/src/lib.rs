pub mod desired;
pub mod mapdiff;
pub mod policy;
