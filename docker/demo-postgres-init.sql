-- Databases of the demo sources and targets (the image creates `visits` itself).
CREATE DATABASE sierra;
CREATE DATABASE warehouse;
CREATE DATABASE movies;
CREATE DATABASE jobs;
