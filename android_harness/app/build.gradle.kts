// Top-level build file: plugin versions only (android_harness/app/README.md lists the tested-by-nobody-here versions).
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "1.9.24" apply false
}
